from izzi_proxy.cli import main

raise SystemExit(main())
