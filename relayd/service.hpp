// relayd's request handler: one qmgr request (libmail/relay_protocol) ->
// the queue file's envelope -> the scheduler -> one reply.
#pragma once

#include <functional>

#include "libmail/ipc.hpp"
#include "relayd/scheduler.hpp"

namespace facteur::relayd {

class Service {
public:
    explicit Service(Scheduler& scheduler) : scheduler_(scheduler) {}
    // `respond` runs once, possibly before handle() returns.
    void handle(const ipc::Frame& request, std::function<void(const ipc::Frame&)> respond);

private:
    Scheduler& scheduler_;
};

}  // namespace facteur::relayd
