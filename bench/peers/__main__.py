from bench.peers.harness import main

main()
