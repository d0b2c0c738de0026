from blip_build.cli import main

raise SystemExit(main())
