from voicelane.cli import main

raise SystemExit(main())
