from sylvan.__main__ import console

console()
