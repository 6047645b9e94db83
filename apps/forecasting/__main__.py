from apps.forecasting import main

main()
