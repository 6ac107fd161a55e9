// SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) server
// mechanisms: they parse what the client sends, nothing more.
#include "libmail/sasl.hpp"
#include "libmail/ascii.hpp"
#include "libmail/secret.hpp"


namespace facteur::sasl {
namespace {

// RFC 4616 §2: authzid, authcid and passwd each "up to 255 octets"; we use
// the same bound for LOGIN's user name and password.
constexpr size_t kMaxField = 255;

Step done() { return Step{Step::Kind::done, {}, {}}; }
Step failed(std::string why) { return Step{Step::Kind::failed, {}, std::move(why)}; }
Step challenge(std::string text) { return Step{Step::Kind::challenge, std::move(text), {}}; }

bool has_nul(std::string_view text) { return text.find('\0') != std::string_view::npos; }

// RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
class Plain final : public ServerMechanism {
public:
    std::string_view name() const override { return "PLAIN"; }

    Step start(std::optional<std::string_view> initial) override {
        if (state_ != State::initial) return failed("mechanism already started");
        // RFC 4616 §2 / RFC 4422 §5: no (or an empty) initial response: send
        // an empty challenge and wait for the message.
        if (!initial || initial->empty()) {
            state_ = State::waiting;
            return challenge("");
        }
        state_ = State::waiting;
        return step(*initial);
    }

    Step step(std::string_view message) override {
        if (state_ != State::waiting) return failed("unexpected response");
        state_ = State::finished;
        size_t first = message.find('\0');
        if (first == std::string_view::npos) return failed("malformed PLAIN message: no NUL separator");
        size_t second = message.find('\0', first + 1);
        if (second == std::string_view::npos) return failed("malformed PLAIN message: one NUL separator");
        std::string_view authzid = message.substr(0, first);
        std::string_view authcid = message.substr(first + 1, second - first - 1);
        std::string_view password = message.substr(second + 1);
        if (has_nul(password)) return failed("malformed PLAIN message: NUL inside the password");
        if (authcid.empty()) return failed("empty authentication identity");
        if (password.empty()) return failed("empty password");
        if (authzid.size() > kMaxField || authcid.size() > kMaxField || password.size() > kMaxField)
            return failed("PLAIN field longer than 255 octets");
        credentials_.authzid = authzid;
        credentials_.authcid = authcid;
        credentials_.password = password;
        return done();
    }

private:
    enum class State { initial, waiting, finished };
    State state_ = State::initial;
};

// draft-murchison-sasl-login-00 §2: the server prompts "Username:" then
// "Password:"; an initial response is the user name.
class Login final : public ServerMechanism {
public:
    std::string_view name() const override { return "LOGIN"; }

    Step start(std::optional<std::string_view> initial) override {
        if (state_ != State::initial) return failed("mechanism already started");
        state_ = State::user_name;
        // An empty initial response carries no user name: ask for it.
        if (initial && !initial->empty()) return step(*initial);
        return challenge("Username:");
    }

    Step step(std::string_view response) override {
        switch (state_) {
            case State::user_name:
                state_ = State::finished;
                if (response.empty()) return failed("empty user name");
                if (response.size() > kMaxField) return failed("user name longer than 255 octets");
                if (has_nul(response)) return failed("NUL in user name");
                credentials_.authcid = response;
                state_ = State::password;
                return challenge("Password:");
            case State::password:
                state_ = State::finished;
                if (response.empty()) return failed("empty password");
                if (response.size() > kMaxField) return failed("password longer than 255 octets");
                if (has_nul(response)) return failed("NUL in password");
                credentials_.password = response;
                return done();
            case State::initial:
            case State::finished:
                break;
        }
        return failed("unexpected response");
    }

private:
    enum class State { initial, user_name, password, finished };
    State state_ = State::initial;
};


}  // namespace

Credentials::~Credentials() { secret::wipe(password); }

ServerMechanism::~ServerMechanism() = default;

std::unique_ptr<ServerMechanism> make_server_mechanism(std::string_view name) {
    // Clients send mechanism names in any case; Postfix and Dovecot match
    // them case-insensitively, and so do we.
    if (ascii::iequals(name, "PLAIN")) return std::make_unique<Plain>();
    if (ascii::iequals(name, "LOGIN")) return std::make_unique<Login>();
    return nullptr;
}

std::vector<std::string> supported_mechanisms() { return {"PLAIN", "LOGIN"}; }

}  // namespace facteur::sasl
