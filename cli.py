from sylvan.cli import main

main()
