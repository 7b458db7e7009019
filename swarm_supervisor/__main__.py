from swarm_supervisor.cli import main

main()
