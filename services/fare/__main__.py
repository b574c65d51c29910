from services.fare.main import main

main()
