from elastic_operator.main import main

raise SystemExit(main())
