from services.accounting.main import main

main()
