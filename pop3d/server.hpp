// pop3d's listeners: the shared event::SessionServer with POP3's refusals
// (-ERR [SYS/TEMP] at the greeting) and implicit TLS on pop3s sockets.
#pragma once

#include <functional>

#include "libmail/session_server.hpp"
#include "libmail/unique_fd.hpp"
#include "pop3d/session.hpp"

namespace facteur::pop3d {

class Server {
public:
    explicit Server(SessionServices services);

    // Accepts on `fd` with the rules of `kind`; pop3s needs TLS (checked
    // by the caller at start).
    void listen(UniqueFd fd, PortKind kind);
    // Stops accepting and tells every session "-ERR [SYS/TEMP] Server
    // shutting down"; `done` runs once the last session is gone (sessions
    // still saving \Seen flags are waited for), or at once when there is none.
    void shutdown(std::function<void()> done) { server_.shutdown(std::move(done)); }
    size_t sessions() const { return server_.sessions(); }

private:
    SessionServices services_;
    event::SessionServer server_;
};

}  // namespace facteur::pop3d
