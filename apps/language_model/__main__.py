from apps.language_model import main

main()
