// A pool of relayd connections, one request in flight on each (see
// relay_pool.hpp).
#include "qmgr/relay_pool.hpp"

#include "libmail/panic.hpp"

namespace facteur::qmgr {

RelayPool::RelayPool(event::Loop& loop, std::string socket_path, size_t limit, std::chrono::milliseconds timeout)
    : loop_(loop), socket_path_(std::move(socket_path)), limit_(std::max<size_t>(1, limit)), timeout_(timeout) {}

RelayPool::~RelayPool() { *alive_ = false; }

void RelayPool::call(ipc::Frame request, ipc::AsyncClient::Done done) {
    if (!idle_.empty()) {
        ipc::AsyncClient* client = idle_.back();
        idle_.pop_back();
        start(*client, std::move(request), std::move(done));
    } else if (clients_.size() < limit_) {
        clients_.push_back(std::make_unique<ipc::AsyncClient>(loop_, socket_path_, timeout_));
        start(*clients_.back(), std::move(request), std::move(done));
    } else {
        waiting_.emplace_back(std::move(request), std::move(done));
    }
}

void RelayPool::start(ipc::AsyncClient& client, ipc::Frame request, ipc::AsyncClient::Done done) {
    if (client.in_flight() != 0) panic("RelayPool: a busy relayd connection was reused");
    ++busy_;
    client.call(request, [this, &client, done = std::move(done), alive = alive_](Result<ipc::Frame> reply) {
        if (!*alive) return;
        --busy_;
        // The connection is free again before `done` runs, so a call made
        // from `done` can use it. A failed connection reconnects by itself.
        if (!waiting_.empty()) {
            auto [next, next_done] = std::move(waiting_.front());
            waiting_.pop_front();
            start(client, std::move(next), std::move(next_done));
        } else {
            idle_.push_back(&client);
        }
        done(std::move(reply));
    });
}

}  // namespace facteur::qmgr
