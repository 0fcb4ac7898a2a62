// Standard proto3 JSON mapping: zero values left out, enums by name, 64-bit integers as strings.
#include "cli/json_output.h"

#include "google/protobuf/util/json_util.h"

namespace tcpscope::cli {

std::string JsonLine(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = false;
  std::string json;
  // Printing a valid message cannot fail (no Any fields, no unknown enum resolution needed).
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

}  // namespace tcpscope::cli
