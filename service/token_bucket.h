// A token bucket: `rate` tokens a second, holding at most `burst`. Used to cap the events a
// single agent stream may send per second.
#pragma once

#include <algorithm>

#include "absl/time/time.h"

namespace tcpscope::service {

class TokenBucket {
 public:
  // rate <= 0: unlimited.
  TokenBucket(double rate, double burst, absl::Time now)
      : rate_(rate), burst_(burst), tokens_(burst), last_(now) {}

  // Takes `amount` tokens if there are that many; otherwise takes none and returns false.
  bool TryTake(double amount, absl::Time now) {
    if (rate_ <= 0) return true;
    tokens_ = std::min(burst_, tokens_ + rate_ * absl::ToDoubleSeconds(now - last_));
    last_ = std::max(last_, now);
    if (tokens_ < amount) return false;
    tokens_ -= amount;
    return true;
  }

 private:
  const double rate_;
  const double burst_;
  double tokens_;
  absl::Time last_;
};

}  // namespace tcpscope::service
