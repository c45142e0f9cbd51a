"""``python -m trainer``: see ``trainer/train.py`` for the launch commands."""

from trainer.train import main

raise SystemExit(main())
