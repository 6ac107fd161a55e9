// pop3d's listeners and the sessions they accept: per-client-IP and
// per-process session limits (-ERR [SYS/TEMP] at the greeting), implicit
// TLS on pop3s sockets, and an orderly shutdown.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "libmail/event.hpp"
#include "libmail/unique_fd.hpp"
#include "pop3d/session.hpp"

namespace facteur::pop3d {

class Server {
public:
    explicit Server(SessionServices services);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Accepts on `fd` with the rules of `kind`; pop3s needs TLS (checked
    // by the caller at start).
    void listen(UniqueFd fd, PortKind kind);
    // Stops accepting and tells every session "-ERR [SYS/TEMP] Server
    // shutting down"; `done` runs once the last session is gone (sessions
    // still saving \Seen flags are waited for), or at once when there is none.
    void shutdown(std::function<void()> done);

    size_t sessions() const { return sessions_.size(); }

private:
    void accept(UniqueFd fd, PortKind kind);
    void refuse(std::shared_ptr<event::Connection> connection, std::string reply);
    void finished(uint64_t id, const std::string& address);

    SessionServices services_;
    std::vector<std::unique_ptr<event::Listener>> listeners_;
    std::map<uint64_t, std::shared_ptr<Session>> sessions_;
    std::unordered_map<std::string, size_t> per_address_;
    // Connections refused at the greeting, kept until the reply is out.
    std::map<uint64_t, std::shared_ptr<event::Connection>> refused_;
    uint64_t next_id_ = 1;
    std::function<void()> on_shutdown_done_;
    bool shutting_down_ = false;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace facteur::pop3d
