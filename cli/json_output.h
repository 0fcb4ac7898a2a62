// -o json: proto3 JSON of one message on one line, with the proto field names (host_name, not
// hostName). Scripts and the test harness parse these lines back into the protos.
#pragma once

#include <string>

#include "google/protobuf/message.h"

namespace tcpscope::cli {

std::string JsonLine(const google::protobuf::Message& message);

}  // namespace tcpscope::cli
