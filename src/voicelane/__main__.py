from voicelane.lifeline import follow_parent

follow_parent()  # a child started by a voicelane runner dies with its parent

from voicelane.cli import main  # noqa: E402

raise SystemExit(main())
