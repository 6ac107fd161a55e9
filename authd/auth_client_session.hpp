// One connection on authd's SASL socket, speaking Dovecot's auth-client
// protocol: handshake, then AUTH/CONT requests answered with OK/CONT/FAIL.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "authd/password_checker.hpp"
#include "libmail/event.hpp"
#include "libmail/sasl.hpp"

namespace facteur::authd {

class AuthClientSession : public std::enable_shared_from_this<AuthClientSession> {
public:
    AuthClientSession(std::shared_ptr<event::Connection> connection, PasswordChecker& checker, unsigned long cuid);
    void start(std::function<void()> on_closed);

private:
    struct Request {
        std::unique_ptr<sasl::ServerMechanism> mechanism;
        std::string service, remote_ip;
        bool checking = false;
    };
    void on_readable();
    void handle_line(std::string_view line);
    void handle_auth(std::string_view line);
    void handle_cont(std::string_view line);
    void advance(unsigned long id, const sasl::Step& step);
    void fail(unsigned long id, std::string_view reason, bool temporary = false, std::string_view user = {});
    void send(std::string_view line);

    std::shared_ptr<event::Connection> connection_;
    PasswordChecker& checker_;
    unsigned long cuid_;
    bool handshake_done_ = false;
    std::map<unsigned long, Request> requests_;
};

}  // namespace facteur::authd
