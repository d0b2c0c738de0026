from blip_client.cli import main

raise SystemExit(main())
