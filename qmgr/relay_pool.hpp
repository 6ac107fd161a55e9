// qmgr's calls to relayd. ipc::AsyncClient answers strictly in order on one
// connection and a relayd request can take minutes (MX lookups, slow
// servers), so each request in flight gets its own connection: a small
// pool of clients, reused, at most `limit` busy; further calls wait here.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "libmail/event.hpp"
#include "libmail/ipc.hpp"

namespace facteur::qmgr {

class RelayPool {
public:
    RelayPool(event::Loop& loop, std::string socket_path, size_t limit, std::chrono::milliseconds timeout);
    ~RelayPool();
    RelayPool(const RelayPool&) = delete;
    RelayPool& operator=(const RelayPool&) = delete;

    // `done` runs from the loop with relayd's reply or the ipc error. Calls
    // still waiting or in flight when the pool is destroyed are dropped
    // without `done` (qmgr is stopping; the messages stay in the queue).
    void call(ipc::Frame request, ipc::AsyncClient::Done done);

    size_t busy() const { return busy_; }
    size_t waiting() const { return waiting_.size(); }

private:
    void start(ipc::AsyncClient& client, ipc::Frame request, ipc::AsyncClient::Done done);

    event::Loop& loop_;
    std::string socket_path_;
    size_t limit_;
    std::chrono::milliseconds timeout_;
    std::vector<std::unique_ptr<ipc::AsyncClient>> clients_;  // every connection made so far
    std::vector<ipc::AsyncClient*> idle_;                     // those with nothing in flight
    size_t busy_ = 0;
    std::deque<std::pair<ipc::Frame, ipc::AsyncClient::Done>> waiting_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace facteur::qmgr
