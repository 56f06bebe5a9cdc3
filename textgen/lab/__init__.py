"""Look inside and measure: the cells' equations, unit traces and pages, the memory benchmark."""
