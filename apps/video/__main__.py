from apps.video import main

main()
