"""`python -m captionlab train|evaluate|caption|components ...`: the `captionlab` command."""

from captionlab.cli import main

main()
