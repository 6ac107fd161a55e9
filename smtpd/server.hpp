// smtpd's listeners: the shared event::SessionServer with SMTP's refusals
// (421 at the greeting) and implicit TLS on the submissions port.
#pragma once

#include <functional>

#include "libmail/session_server.hpp"
#include "libmail/unique_fd.hpp"
#include "smtpd/smtp_session.hpp"

namespace facteur::smtpd {

class Server {
public:
    explicit Server(SessionServices services);

    // Accepts on `fd` with the rules of `kind`; submissions needs TLS
    // (checked by the caller at start).
    void listen(UniqueFd fd, PortKind kind);
    // Stops accepting and says 421 to every session; `done` runs once the
    // last session is gone (or at once when there is none).
    void shutdown(std::function<void()> done) { server_.shutdown(std::move(done)); }
    size_t sessions() const { return server_.sessions(); }

private:
    SessionServices services_;
    event::SessionServer server_;
};

}  // namespace facteur::smtpd
