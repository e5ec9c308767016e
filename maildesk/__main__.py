from maildesk.cli import main

if __name__ == "__main__":  # not when a helper process (daemon/parsing.py) starts
    raise SystemExit(main())
