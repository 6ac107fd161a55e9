// The master control protocol, shared by master and the facteur CLI: ipc
// frames with `command` = status | stop | reload, over master_control_socket.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "libmail/ipc.hpp"
#include "libmail/result.hpp"

namespace facteur::master_control {

struct ProcessStatus {
    std::string service;
    pid_t pid = 0;
    std::string state;  // running, starting, throttled (Ns left), disabled, stopping
    int64_t uptime_seconds = 0;
    int restarts = 0;
};

// Reply to `status`: master's own row first, then one per process.
ipc::Frame encode_status(const std::vector<ProcessStatus>& rows);
Result<std::vector<ProcessStatus>> decode_status(const ipc::Frame& reply);


// Blocking helper for the CLI: sends `command`, returns the reply.
Result<ipc::Frame> call(const std::string& socket_path, std::string_view command);

}  // namespace facteur::master_control
