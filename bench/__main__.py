from bench.summary import main

main()
