from syncengine.cli.main import main

main()
