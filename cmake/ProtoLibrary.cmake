# tcpscope_proto_library(NAME PROTOS...): C++ and gRPC code generated from protos under proto/.
function(tcpscope_proto_library name)
  set(proto_root "${PROJECT_SOURCE_DIR}/proto")
  set(out "${CMAKE_CURRENT_BINARY_DIR}/gen")
  file(MAKE_DIRECTORY "${out}")
  get_target_property(grpc_cpp_plugin gRPC::grpc_cpp_plugin LOCATION)
  set(sources)
  foreach(proto ${ARGN})
    file(RELATIVE_PATH rel "${proto_root}" "${CMAKE_CURRENT_SOURCE_DIR}/${proto}")
    string(REGEX REPLACE "\\.proto$" "" base "${rel}")
    set(generated "${out}/${base}.pb.cc" "${out}/${base}.pb.h" "${out}/${base}.grpc.pb.cc"
                  "${out}/${base}.grpc.pb.h")
    add_custom_command(
      OUTPUT ${generated}
      COMMAND protobuf::protoc --proto_path=${proto_root} --cpp_out=${out} --grpc_out=${out}
              --plugin=protoc-gen-grpc=${grpc_cpp_plugin} ${proto_root}/${rel}
      DEPENDS "${proto_root}/${rel}" protobuf::protoc
      COMMENT "protoc ${rel}")
    list(APPEND sources ${generated})
  endforeach()
  add_library(${name} STATIC ${sources})
  target_include_directories(${name} PUBLIC "${out}")
  target_link_libraries(${name} PUBLIC protobuf::libprotobuf gRPC::grpc++)
endfunction()
