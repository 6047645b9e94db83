from apps.translation import main

main()
