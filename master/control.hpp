// master's control socket: answers `facteur status`, `stop` and `reload`
// for root (or, in an unprivileged instance, for the user running it).
#pragma once

#include <functional>
#include <memory>

#include "libmail/event.hpp"
#include "libmail/ipc.hpp"
#include "master/supervisor.hpp"

namespace facteur::master {

class ControlServer {
public:
    ControlServer(event::Loop& loop, UniqueFd listening_fd, Supervisor& supervisor, std::function<void()> stop,
                  std::function<Status()> reload);

private:
    void handle(const ipc::Frame& request, ipc::Server::Responder respond);

    Supervisor& supervisor_;
    std::function<void()> stop_;
    std::function<Status()> reload_;
    std::unique_ptr<ipc::Server> server_;
    std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace facteur::master
