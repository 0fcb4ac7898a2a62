# Tests that run our code on several threads at once (epoll thread, pollers, concurrent agents,
# readers, scrapes and expiry) or check what threads share. The TSan build runs these:
# scripts/test --sanitize=thread (ctest -L concurrency). Not here: tests of our gRPC reactors
# (observer_service_test, the integration tests), because Debian's gRPC is not TSan-instrumented
# and hands each operation to its completion through code TSan cannot see; see
# tests/sanitizers/README.md.
set_property(TEST
  metrics_server_test
  event_log_test
  aggregator_test
  pair_index_test
  replica_pairing_test
  fleet_metrics_test
  sock_diag_source_test
  workload_resolver_test
  APPEND PROPERTY LABELS concurrency)
