from services.inventory.main import main

main()
