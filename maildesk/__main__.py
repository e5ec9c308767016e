from maildesk.cli import main

raise SystemExit(main())
