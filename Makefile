# The few commands a person types; each is also a script for machines without make.
.PHONY: run test setup bench

run:
	./run.sh

test:
	./test.sh

setup:
	scripts/setup.sh test

bench:
	./bench.sh
