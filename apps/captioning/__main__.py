from apps.captioning import main

main()
