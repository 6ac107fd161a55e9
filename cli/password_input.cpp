// Reading a new password or APOP secret from stdin or the terminal, and
// hashing passwords.
#include "cli/password_input.hpp"

#include <fcntl.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

#include <fmt/format.h>
#include <openssl/crypto.h>

#include "libmail/password.hpp"
#include "libmail/system.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::cli {
namespace {

// Terminal state to put back if a signal interrupts the prompt; only
// async-signal-safe calls touch it from the handler.
struct termios g_saved_terminal;
volatile sig_atomic_t g_terminal_fd = -1;

extern "C" void restore_terminal_and_die(int signo) {
    if (g_terminal_fd >= 0) tcsetattr(g_terminal_fd, TCSAFLUSH, &g_saved_terminal);
    signal(signo, SIG_DFL);
    raise(signo);
}

// Echo off for its lifetime (termios), restored on every exit path,
// including SIGINT/SIGTERM/SIGHUP/SIGQUIT while the prompt waits.
class EchoOff {
public:
    static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};

    explicit EchoOff(int fd) : fd_(fd) {
        if (tcgetattr(fd, &g_saved_terminal) != 0) {
            error_ = errno;
            return;
        }
        struct sigaction action {};
        action.sa_handler = restore_terminal_and_die;
        sigemptyset(&action.sa_mask);
        for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &action, &previous_[i]);
        g_terminal_fd = fd;
        struct termios quiet = g_saved_terminal;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        quiet.c_lflag |= ECHONL;  // the Enter key still moves to the next line
        if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) error_ = errno;
        active_ = true;
    }
    ~EchoOff() {
        if (!active_) return;
        tcsetattr(fd_, TCSAFLUSH, &g_saved_terminal);
        g_terminal_fd = -1;
        for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &previous_[i], nullptr);
    }
    EchoOff(const EchoOff&) = delete;
    EchoOff& operator=(const EchoOff&) = delete;

    int error() const { return error_; }

private:
    int fd_;
    bool active_ = false;
    int error_ = 0;
    struct sigaction previous_[std::size(kSignals)] {};
};

Status write_all(int fd, std::string_view text) {
    while (!text.empty()) {
        ssize_t n = write(fd, text.data(), text.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return make_error(fmt::format("cannot write to the terminal: {}", system::errno_text(errno)));
        text.remove_prefix(static_cast<size_t>(n));
    }
    return {};
}

Status ask(int tty, std::string_view prompt, Secret& out, const SecretKind& kind) {
    // Echo goes off before the prompt shows, so nothing typed after it can
    // be echoed or discarded by TCSAFLUSH.
    EchoOff echo_off(tty);
    if (echo_off.error() != 0)
        return make_error(fmt::format("cannot turn off echo on the terminal: {}", system::errno_text(echo_off.error())));
    if (Status s = write_all(tty, prompt); !s) return s;
    return read_password_line(tty, out, kind);
}

}  // namespace

Secret::Secret() { value_.reserve(kMaxPasswordLength + 1); }

Secret::~Secret() { clear(); }

bool Secret::append(char c, size_t max_length) {
    // Never past the reserved capacity, which would reallocate.
    if (value_.size() >= std::min(max_length, kMaxPasswordLength)) return false;
    value_.push_back(c);
    return true;
}

void Secret::remove_last() {
    if (value_.empty()) return;
    OPENSSL_cleanse(&value_.back(), 1);
    value_.pop_back();
}

void Secret::clear() {
    if (!value_.empty()) OPENSSL_cleanse(value_.data(), value_.size());
    value_.clear();
}

Status read_password_line(int fd, Secret& out, const SecretKind& kind) {
    out.clear();
    // One byte at a time: nothing past the line is consumed; reading stops
    // as soon as the length bound is passed.
    for (;;) {
        char c = 0;
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return make_error(fmt::format("cannot read the {}: {}", kind.name, system::errno_text(errno)));
        if (n == 0) break;
        if (c == '\n') break;
        if (!out.append(c, kind.max_length)) {
            out.clear();
            return make_error(fmt::format("{} too long (at most {} bytes)", kind.name, kind.max_length));
        }
    }
    // A last line without "\n" (end of input) is accepted as is.
    if (!out.empty() && out.view().back() == '\r') out.remove_last();  // a CRLF line ending
    if (out.empty()) return make_error(fmt::format("empty {} refused", kind.name));
    if (out.view().find('\0') != std::string_view::npos) {
        out.clear();
        return make_error(fmt::format("{} contains a NUL byte", kind.name));
    }
    return {};
}

Status prompt_new_password(std::string_view prompt, Secret& out, const SecretKind& kind) {
    UniqueFd tty(open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY));
    if (!tty) return make_error(fmt::format("no terminal to ask for the {} on; use {}", kind.name, kind.stdin_option));
    Secret again;
    if (Status s = ask(tty.get(), prompt, out, kind); !s) return s;
    if (Status s = ask(tty.get(), fmt::format("Retype the {}: ", kind.name), again, kind); !s) {
        out.clear();
        return s;
    }
    if (out.view().size() != again.view().size() ||
        CRYPTO_memcmp(out.view().data(), again.view().data(), out.view().size()) != 0) {
        out.clear();
        return make_error(fmt::format("the {}s do not match", kind.name));
    }
    return {};
}

Status read_new_password(bool from_stdin, std::string_view address, Secret& out) {
    return from_stdin ? read_password_line(STDIN_FILENO, out, kPassword)
                      : prompt_new_password(fmt::format("Password for {}: ", address), out, kPassword);
}

Status read_new_apop_secret(bool from_stdin, std::string_view address, Secret& out, const SecretKind& kind) {
    Status read = from_stdin ? read_password_line(STDIN_FILENO, out, kind)
                             : prompt_new_password(fmt::format("APOP secret for {}: ", address), out, kind);
    if (!read) return read;
    if (Status valid = directory::check_apop_secret(out.view()); !valid) {
        out.clear();
        return valid;
    }
    return {};
}

Result<std::string> hash_new_password(Secret& password) {
    auto hash = auth::hash_password(password.view());
    password.clear();
    if (!hash) return make_error(fmt::format("cannot hash the password: {}", hash.error()));
    return hash;
}

Result<std::string> read_new_password_hash(bool from_stdin, std::string_view address) {
    Secret password;
    if (Status read = read_new_password(from_stdin, address, password); !read) return make_error(read.error());
    return hash_new_password(password);
}

}  // namespace facteur::cli
