from saga_log.recorder.main import main

main()
