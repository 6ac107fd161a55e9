// Server-side SASL mechanisms (PLAIN per RFC 4616, LOGIN per
// draft-murchison-sasl-login): pure state machines that extract credentials.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace facteur::sasl {

// What a client presented. Checking the password is authd's job; so is the
// policy on authzid (RFC 4616 §2: a non-empty authzid that differs from
// authcid asks to act as someone else, refuse it unless explicitly allowed).
struct Credentials {
    std::string authzid, authcid, password;

    Credentials() = default;
    Credentials(const Credentials&) = default;
    Credentials& operator=(const Credentials&) = default;
    ~Credentials();  // wipes password
};

struct Step {
    // Scoped: an unscoped enumerator "challenge" would clash with the member.
    enum class Kind { challenge, done, failed };
    Kind kind = Kind::failed;
    std::string challenge;  // raw bytes; the caller base64-encodes them
    std::string error;      // why, for the log (never contains the password)
};

class ServerMechanism {
public:
    virtual ~ServerMechanism();
    // Inputs are already-decoded bytes. An absent initial response is
    // std::nullopt; an empty one ("=" on the wire) is an empty view.
    virtual Step start(std::optional<std::string_view> initial_response) = 0;
    virtual Step step(std::string_view response) = 0;
    virtual std::string_view name() const = 0;
    // Meaningful once a Step of kind done was returned.
    const Credentials& credentials() const { return credentials_; }

protected:
    Credentials credentials_;
};

// Case-insensitive; nullptr for a mechanism this server does not offer.
std::unique_ptr<ServerMechanism> make_server_mechanism(std::string_view name);
// {"PLAIN", "LOGIN"}, in the order to advertise them.
std::vector<std::string> supported_mechanisms();

}  // namespace facteur::sasl
