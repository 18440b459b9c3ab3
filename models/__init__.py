"""Pure computation: encoder, interest state, catalog, ranking.

numpy/torch only; never faust or aiokafka, so all of it runs in agents,
offline replay and tests alike."""
