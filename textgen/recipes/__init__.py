"""One workflow per module, composed from the packages before it: run(request, reporter) -> result."""
