"""What textgen draws on a terminal: progress, tables, coloured traces and the interactive prompts.
The command line and the training recipe's progress use it; it computes no result."""
