from sylvan.cli import console

console()
