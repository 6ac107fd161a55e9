// POP3 load generator for bench/pop3-compare: one thread per client, each
// repeating login (USER/PASS) + LIST + UIDL + RETR of every message + QUIT,
// checking every retrieved message's octet count against LIST (RFC 1939 §11).
// Blocking sockets, bounded rounds and a wall-clock cap; nothing is deleted.
//
//   pop3_load --port N --users FILE [--rounds R] [--max-seconds S]
//
// FILE holds one "address password" line per client. Prints one line:
//   sessions=... messages=... bytes=... seconds=... errors=...
// and the first few errors on stderr. Exit status 0 only without errors.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

struct Options {
    int port = 0;
    std::string users_file;
    long rounds = 1;
    double max_seconds = 600;
};

struct Totals {
    std::atomic<uint64_t> sessions{0};
    std::atomic<uint64_t> messages{0};
    std::atomic<uint64_t> bytes{0};
    std::atomic<uint64_t> errors{0};
    std::mutex error_mutex;
    std::vector<std::string> first_errors;

    void error(const std::string& what) {
        errors.fetch_add(1);
        std::lock_guard<std::mutex> lock(error_mutex);
        if (first_errors.size() < 5) first_errors.push_back(what);
    }
};

// A blocking POP3 connection with a read buffer; every read has a timeout.
class Connection {
public:
    explicit Connection(int port) {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        if (fd_ < 0) return;
        timeval timeout{30, 0};
        setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        int one = 1;
        setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(static_cast<uint16_t>(port));
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
            close(fd_);
            fd_ = -1;
        }
    }
    ~Connection() {
        if (fd_ >= 0) close(fd_);
    }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    bool ok() const { return fd_ >= 0; }

    bool send(std::string_view data) {
        while (!data.empty()) {
            ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
            if (n <= 0) return false;
            data.remove_prefix(static_cast<size_t>(n));
        }
        return true;
    }

    // One line without its CRLF; nullopt on EOF, timeout or a line over 1 MiB.
    std::optional<std::string_view> line() {
        for (;;) {
            size_t end = buffer_.find("\r\n", start_);
            if (end != std::string::npos) {
                std::string_view out(buffer_.data() + start_, end - start_);
                start_ = end + 2;
                return out;
            }
            if (buffer_.size() - start_ > (1u << 20)) return std::nullopt;
            if (start_ > 0) {
                buffer_.erase(0, start_);
                start_ = 0;
            }
            size_t old = buffer_.size();
            buffer_.resize(old + 65536);
            ssize_t n = recv(fd_, buffer_.data() + old, 65536, 0);
            if (n <= 0) {
                buffer_.resize(old);
                return std::nullopt;
            }
            buffer_.resize(old + static_cast<size_t>(n));
        }
    }

    // A single-line reply: true for +OK.
    bool status(std::string* text = nullptr) {
        auto reply = line();
        if (!reply) return false;
        if (text) *text = std::string(*reply);
        return reply->substr(0, 3) == "+OK";
    }

    // The body of a multi-line reply (after its +OK line), RFC 1939 §3:
    // calls `each` with every line, dot-unstuffed; false on a broken reply.
    template <typename Each>
    bool multiline(Each each) {
        for (;;) {
            auto reply = line();
            if (!reply) return false;
            if (*reply == ".") return true;
            if (!reply->empty() && reply->front() == '.') reply->remove_prefix(1);
            each(*reply);
        }
    }

private:
    int fd_ = -1;
    std::string buffer_;
    size_t start_ = 0;
};

// One session; returns an error text, empty on success.
std::string session(int port, const std::string& user, const std::string& password, Totals& totals) {
    Connection connection(port);
    if (!connection.ok()) return "connect failed";
    std::string text;
    if (!connection.status(&text)) return "greeting: " + text;
    if (!connection.send("USER " + user + "\r\n") || !connection.status(&text)) return "USER: " + text;
    if (!connection.send("PASS " + password + "\r\n") || !connection.status(&text)) return "PASS: " + text;

    std::vector<uint64_t> sizes;
    if (!connection.send("LIST\r\n") || !connection.status(&text)) return "LIST: " + text;
    bool well_formed = true;
    if (!connection.multiline([&](std::string_view entry) {
            unsigned long number = 0;
            unsigned long long size = 0;
            std::string copy(entry);
            if (std::sscanf(copy.c_str(), "%lu %llu", &number, &size) != 2 || number != sizes.size() + 1)
                well_formed = false;
            sizes.push_back(size);
        }) ||
        !well_formed)
        return "LIST: broken listing";

    size_t uids = 0;
    if (!connection.send("UIDL\r\n") || !connection.status(&text)) return "UIDL: " + text;
    if (!connection.multiline([&](std::string_view) { ++uids; })) return "UIDL: broken listing";
    if (uids != sizes.size()) return "UIDL and LIST disagree on the message count";

    for (size_t i = 0; i < sizes.size(); ++i) {
        if (!connection.send("RETR " + std::to_string(i + 1) + "\r\n") || !connection.status(&text))
            return "RETR " + std::to_string(i + 1) + ": " + text;
        uint64_t octets = 0;
        if (!connection.multiline([&](std::string_view content) { octets += content.size() + 2; }))
            return "RETR: broken reply";
        if (octets != sizes[i])
            return "RETR " + std::to_string(i + 1) + ": " + std::to_string(octets) + " octets, LIST said " +
                   std::to_string(sizes[i]);
        totals.bytes.fetch_add(octets);
        totals.messages.fetch_add(1);
    }
    if (!connection.send("QUIT\r\n") || !connection.status(&text)) return "QUIT: " + text;
    totals.sessions.fetch_add(1);
    return {};
}

int usage() {
    std::fprintf(stderr, "usage: pop3_load --port N --users FILE [--rounds R] [--max-seconds S]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string_view name = argv[i];
        const char* value = argv[i + 1];
        if (name == "--port")
            options.port = std::atoi(value);
        else if (name == "--users")
            options.users_file = value;
        else if (name == "--rounds")
            options.rounds = std::atol(value);
        else if (name == "--max-seconds")
            options.max_seconds = std::atof(value);
        else
            return usage();
    }
    if (argc % 2 == 0 || options.port <= 0 || options.port > 65535 || options.users_file.empty() ||
        options.rounds < 1 || options.max_seconds <= 0)
        return usage();

    std::vector<std::pair<std::string, std::string>> users;
    std::ifstream file(options.users_file);
    for (std::string line; std::getline(file, line);) {
        std::istringstream fields(line);
        std::string user, password;
        if (fields >> user >> password) users.emplace_back(user, password);
    }
    if (users.empty()) {
        std::fprintf(stderr, "pop3_load: no users in %s\n", options.users_file.c_str());
        return 2;
    }

    Totals totals;
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(options.max_seconds));
    std::vector<std::thread> threads;
    threads.reserve(users.size());
    for (const auto& [user, password] : users) {
        threads.emplace_back([&, user = user, password = password] {
            for (long round = 0; round < options.rounds && Clock::now() < deadline; ++round) {
                std::string error = session(options.port, user, password, totals);
                if (!error.empty()) totals.error(user + ": " + error);
            }
        });
    }
    for (auto& thread : threads) thread.join();
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();

    std::printf("sessions=%llu messages=%llu bytes=%llu seconds=%.3f errors=%llu\n",
                static_cast<unsigned long long>(totals.sessions.load()),
                static_cast<unsigned long long>(totals.messages.load()),
                static_cast<unsigned long long>(totals.bytes.load()), seconds,
                static_cast<unsigned long long>(totals.errors.load()));
    for (const auto& error : totals.first_errors) std::fprintf(stderr, "pop3_load: %s\n", error.c_str());
    return totals.errors.load() == 0 ? 0 : 1;
}
