// A TCP proxy on loopback between an agent and the service, owned by a test to break the path
// on purpose: cut every connection at once, or stop passing the service's replies (acks) while
// the agent's messages still get through.
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace tcpscope::testing {

class TcpProxy {
 public:
  // Listens on a free 127.0.0.1 port and forwards each connection to 127.0.0.1:target_port.
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(int target_port);
  ~TcpProxy();

  int port() const { return port_; }
  // Closes every proxied connection now (new ones are accepted as before). Returns how many.
  int Cut();
  // While false, bytes from the target to the client are held back (not read), so the client
  // sees no replies; the client's bytes still reach the target.
  void PassReplies(bool pass);
  // Connections accepted so far.
  int accepted() const { return accepted_.load(); }

 private:
  struct Pair {
    int client = -1;
    int target = -1;
  };
  TcpProxy(int listener, int port, int target_port)
      : listener_(listener), port_(port), target_port_(target_port) {}
  void Run();
  int CloseAllLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int listener_;
  const int port_;
  const int target_port_;
  int wake_[2] = {-1, -1};  // pipe: wakes the loop for Cut, PassReplies and the destructor
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  absl::Mutex mu_;
  std::vector<Pair> pairs_ ABSL_GUARDED_BY(mu_);
  bool pass_replies_ ABSL_GUARDED_BY(mu_) = true;
  // Cut() asks the loop thread, the only one that opens and closes the pairs' descriptors.
  bool cut_requested_ ABSL_GUARDED_BY(mu_) = false;
  int last_cut_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace tcpscope::testing
