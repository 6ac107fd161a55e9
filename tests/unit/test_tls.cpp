// Unit tests for libmail/tls: real handshakes over a socketpair between our
// server context and OpenSSL clients, key/cert mismatch, reload, client checks.
#include <catch2/catch.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "libmail/tls.hpp"
#include "libmail/unique_fd.hpp"

using namespace facteur;

namespace {

struct SslFree {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;
struct CtxFree {
    void operator()(SSL_CTX* context) const { SSL_CTX_free(context); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;

// A mkdtemp directory removed at the end of the test.
class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "facteur-tls-XXXXXX").string();
        REQUIRE(mkdtemp(pattern.data()) != nullptr);
        path_ = pattern;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
    std::filesystem::path path_;
};

// Self-signed certificate and key made by the openssl CLI.
void make_certificate(const std::string& cert, const std::string& key, const std::string& common_name,
                      const std::string& key_type = "rsa:2048") {
    std::string command = "openssl req -x509 -newkey " + key_type + " -nodes -subj /CN=" + common_name +
                          " -addext subjectAltName=DNS:" + common_name + " -days 1 -keyout '" + key +
                          "' -out '" + cert + "' </dev/null >/dev/null 2>&1";
    REQUIRE(std::system(command.c_str()) == 0);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& content) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
}

struct Outcome {
    bool ok = false;
    tls::PeerInfo info;
    std::string peer_common_name;  // client side: the certificate it was shown
    std::string error;
};

std::string common_name(const SSL* ssl) {
    X509* certificate = SSL_get0_peer_certificate(ssl);
    if (certificate == nullptr) return {};
    char buffer[256] = {};
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(certificate), NID_commonName, buffer, sizeof buffer) < 0)
        return {};
    return buffer;
}

// One side of a handshake on a blocking socket with a 10 s timeout, so a
// broken test fails instead of hanging. The server sends one line after the
// handshake and the client reads it: data really flows.
Outcome run_side(SSL_CTX* context, int fd, bool server, const std::string& hostname = {}) {
    Outcome outcome;
    timeval timeout{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    SslPtr ssl(SSL_new(context));
    if (!ssl) {
        outcome.error = tls::last_error();
        return outcome;
    }
    SSL_set_fd(ssl.get(), fd);
    if (!server && !hostname.empty()) {
        if (Status prepared = tls::prepare_client(ssl.get(), hostname); !prepared) {
            outcome.error = prepared.error();
            return outcome;
        }
    }
    int result = server ? SSL_accept(ssl.get()) : SSL_connect(ssl.get());
    if (result != 1) {
        outcome.error = tls::last_error();
        shutdown(fd, SHUT_RDWR);  // unblock the other side
        return outcome;
    }
    outcome.info = tls::describe(ssl.get());
    if (server) {
        outcome.ok = SSL_write(ssl.get(), "220 ok\r\n", 8) == 8;
    } else {
        outcome.peer_common_name = common_name(ssl.get());
        char buffer[16] = {};
        outcome.ok = SSL_read(ssl.get(), buffer, sizeof buffer) == 8 && std::string(buffer) == "220 ok\r\n";
    }
    if (!outcome.ok) outcome.error = tls::last_error();
    SSL_shutdown(ssl.get());
    return outcome;
}

struct Handshake {
    Outcome server, client;
};

// Server in a second thread, client here; Catch2 assertions stay on this thread.
Handshake handshake(SSL_CTX* server_context, SSL_CTX* client_context, const std::string& hostname = {}) {
    int fds[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    UniqueFd server_fd(fds[0]), client_fd(fds[1]);
    Handshake result;
    std::thread server_thread([&] { result.server = run_side(server_context, server_fd.get(), true); });
    result.client = run_side(client_context, client_fd.get(), false, hostname);
    server_thread.join();
    return result;
}

CtxPtr plain_client(int max_version = 0) {
    CtxPtr context(SSL_CTX_new(TLS_client_method()));
    REQUIRE(context);
    if (max_version != 0) {
        // Let the client really offer an old protocol, so it is the server
        // that refuses it.
        SSL_CTX_set_security_level(context.get(), 0);
        REQUIRE(SSL_CTX_set_cipher_list(context.get(), "DEFAULT:@SECLEVEL=0") == 1);
        SSL_CTX_set_min_proto_version(context.get(), TLS1_VERSION);
        REQUIRE(SSL_CTX_set_max_proto_version(context.get(), max_version) == 1);
    }
    return context;
}

}  // namespace

TEST_CASE("server context: real handshake and describe()") {
    TempDir dir;
    const std::string cert = dir.file("cert.pem"), key = dir.file("key.pem");
    make_certificate(cert, key, "localhost");
    auto server = tls::Context::server(cert, key);
    REQUIRE(server.ok());
    REQUIRE(server->get() != nullptr);

    SECTION("TLS 1.3 by default") {
        auto client = plain_client();
        Handshake result = handshake(server->get(), client.get());
        INFO(result.server.error << " / " << result.client.error);
        REQUIRE(result.server.ok);
        REQUIRE(result.client.ok);
        CHECK(result.server.info.version == "TLSv1.3");
        CHECK(result.server.info.cipher.starts_with("TLS_"));
        CHECK(result.server.info.bits >= 128);
        CHECK(result.client.info.version == result.server.info.version);
        CHECK(result.client.info.cipher == result.server.info.cipher);
        CHECK(result.client.peer_common_name == "localhost");
    }
    SECTION("TLS 1.2 gets an ECDHE AEAD suite") {
        auto client = plain_client();
        REQUIRE(SSL_CTX_set_max_proto_version(client.get(), TLS1_2_VERSION) == 1);
        Handshake result = handshake(server->get(), client.get());
        INFO(result.server.error << " / " << result.client.error);
        REQUIRE(result.server.ok);
        CHECK(result.server.info.version == "TLSv1.2");
        CHECK(result.server.info.bits >= 128);
        CHECK(result.server.info.cipher.starts_with("ECDHE-RSA-"));
        CHECK((result.server.info.cipher.find("GCM") != std::string::npos ||
               result.server.info.cipher.find("CHACHA20") != std::string::npos));
    }
    SECTION("a TLS 1.2 client offering only CBC suites is refused") {
        auto client = plain_client();
        REQUIRE(SSL_CTX_set_max_proto_version(client.get(), TLS1_2_VERSION) == 1);
        REQUIRE(SSL_CTX_set_cipher_list(client.get(), "AES128-SHA:ECDHE-RSA-AES128-SHA") == 1);
        Handshake result = handshake(server->get(), client.get());
        CHECK_FALSE(result.server.ok);
        CHECK_FALSE(result.client.ok);
        CHECK_THAT(result.server.error, Catch::Contains("no shared cipher"));
    }
    SECTION("a client limited to TLS 1.1 fails the handshake") {
        auto client = plain_client(TLS1_1_VERSION);
        Handshake result = handshake(server->get(), client.get());
        CHECK_FALSE(result.server.ok);
        CHECK_FALSE(result.client.ok);
        CHECK_THAT(result.server.error, Catch::Contains("unsupported protocol"));
    }
}

TEST_CASE("describe() of nothing is empty") {
    tls::PeerInfo info = tls::describe(nullptr);
    CHECK(info.version.empty());
    CHECK(info.cipher.empty());
    CHECK(info.bits == 0);
}

TEST_CASE("server context errors name the file") {
    TempDir dir;
    const std::string cert = dir.file("cert.pem"), key = dir.file("key.pem");
    const std::string other_cert = dir.file("other-cert.pem"), other_key = dir.file("other-key.pem");
    make_certificate(cert, key, "localhost");
    make_certificate(other_cert, other_key, "other.test");

    SECTION("mismatched key") {
        auto server = tls::Context::server(cert, other_key);
        REQUIRE_FALSE(server.ok());
        CHECK_THAT(server.error(), Catch::Contains(other_key) && Catch::Contains("does not match"));
    }
    SECTION("missing certificate file") {
        auto server = tls::Context::server(dir.file("missing.pem"), key);
        REQUIRE_FALSE(server.ok());
        CHECK_THAT(server.error(), Catch::Contains(dir.file("missing.pem")) && Catch::Contains("No such file"));
    }
    SECTION("missing key file") {
        auto server = tls::Context::server(cert, dir.file("missing-key.pem"));
        REQUIRE_FALSE(server.ok());
        CHECK_THAT(server.error(), Catch::Contains(dir.file("missing-key.pem")));
    }
    SECTION("a file that is not PEM") {
        write_file(dir.file("junk.pem"), "this is not a certificate\n");
        auto server = tls::Context::server(dir.file("junk.pem"), key);
        REQUIRE_FALSE(server.ok());
        CHECK_THAT(server.error(), Catch::Contains(dir.file("junk.pem")));
        auto swapped = tls::Context::server(cert, dir.file("junk.pem"));
        REQUIRE_FALSE(swapped.ok());
        CHECK_THAT(swapped.error(), Catch::Contains(dir.file("junk.pem")));
    }
    SECTION("an encrypted key is refused without prompting") {
        const std::string encrypted = dir.file("encrypted-key.pem");
        std::string command = "openssl pkey -in '" + key + "' -aes256 -passout pass:hunter2 -out '" + encrypted +
                              "' </dev/null >/dev/null 2>&1";
        REQUIRE(std::system(command.c_str()) == 0);
        auto server = tls::Context::server(cert, encrypted);
        REQUIRE_FALSE(server.ok());
        CHECK_THAT(server.error(), Catch::Contains(encrypted));
    }
    SECTION("a chain file with a broken second entry") {
        write_file(dir.file("chain.pem"),
                   read_file(cert) + "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n");
        auto server = tls::Context::server(dir.file("chain.pem"), key);
        REQUIRE_FALSE(server.ok());
        CHECK_THAT(server.error(), Catch::Contains(dir.file("chain.pem")));
    }
    SECTION("a chain file with an intermediate is accepted") {
        write_file(dir.file("chain.pem"), read_file(cert) + read_file(other_cert));
        auto server = tls::Context::server(dir.file("chain.pem"), key);
        CHECK(server.ok());
    }
}

TEST_CASE("reload() serves the new certificate and keeps the old one on failure") {
    TempDir dir;
    const std::string cert = dir.file("cert.pem"), key = dir.file("key.pem");
    make_certificate(cert, key, "first.test");
    auto server = tls::Context::server(cert, key);
    REQUIRE(server.ok());
    auto client = plain_client();
    SSL_CTX* raw = server->get();

    Handshake before = handshake(server->get(), client.get());
    REQUIRE(before.client.ok);
    CHECK(before.client.peer_common_name == "first.test");

    // A broken pair on disk: reload fails, the old certificate stays.
    const std::string first_cert = read_file(cert);
    make_certificate(dir.file("second-cert.pem"), dir.file("second-key.pem"), "second.test");
    write_file(cert, read_file(dir.file("second-cert.pem")));  // key.pem is still the first key
    Status broken = server->reload();
    REQUIRE_FALSE(broken.ok());
    CHECK_THAT(broken.error(), Catch::Contains("does not match"));
    Handshake still = handshake(server->get(), client.get());
    REQUIRE(still.client.ok);
    CHECK(still.client.peer_common_name == "first.test");

    // The matching key arrives: reload succeeds, same SSL_CTX, new certificate.
    write_file(key, read_file(dir.file("second-key.pem")));
    Status reloaded = server->reload();
    INFO(reloaded.error());
    REQUIRE(reloaded.ok());
    CHECK(server->get() == raw);
    Handshake after = handshake(server->get(), client.get());
    REQUIRE(after.client.ok);
    CHECK(after.client.peer_common_name == "second.test");
}

TEST_CASE("Context is movable") {
    TempDir dir;
    make_certificate(dir.file("c.pem"), dir.file("k.pem"), "localhost", "ec -pkeyopt ec_paramgen_curve:P-256");
    auto server = tls::Context::server(dir.file("c.pem"), dir.file("k.pem"));
    REQUIRE(server.ok());
    SSL_CTX* raw = server->get();
    tls::Context moved = std::move(*server);
    CHECK(moved.get() == raw);
    auto client = plain_client();
    Handshake result = handshake(moved.get(), client.get());
    CHECK(result.client.ok);
    CHECK(result.server.info.version == "TLSv1.3");
}

TEST_CASE("client context verifies the server against a CA file and a name") {
    TempDir dir;
    const std::string cert = dir.file("cert.pem"), key = dir.file("key.pem");
    make_certificate(cert, key, "mx.example.test");
    auto server = tls::Context::server(cert, key);
    REQUIRE(server.ok());

    SECTION("trusted CA and matching name") {
        auto client = tls::Context::client({.verify_peer = true, .ca_file = cert});
        REQUIRE(client.ok());
        Handshake result = handshake(server->get(), client->get(), "mx.example.test.");
        INFO(result.client.error);
        CHECK(result.client.ok);
        CHECK(result.client.info.version == "TLSv1.3");
    }
    SECTION("trusted CA but another name") {
        auto client = tls::Context::client({.verify_peer = true, .ca_file = cert});
        REQUIRE(client.ok());
        Handshake result = handshake(server->get(), client->get(), "evil.example.test");
        CHECK_FALSE(result.client.ok);
        CHECK_THAT(result.client.error, Catch::Contains("certificate verify failed"));
    }
    SECTION("untrusted certificate (system store)") {
        auto client = tls::Context::client({});
        REQUIRE(client.ok());
        Handshake result = handshake(server->get(), client->get(), "mx.example.test");
        CHECK_FALSE(result.client.ok);
        CHECK_THAT(result.client.error, Catch::Contains("certificate verify failed"));
    }
    SECTION("opportunistic: no verification") {
        auto client = tls::Context::client({.verify_peer = false, .ca_file = {}});
        REQUIRE(client.ok());
        Handshake result = handshake(server->get(), client->get(), "anything.example.test");
        CHECK(result.client.ok);
    }
    SECTION("missing CA file") {
        auto client = tls::Context::client({.verify_peer = true, .ca_file = dir.file("nope.pem")});
        REQUIRE_FALSE(client.ok());
        CHECK_THAT(client.error(), Catch::Contains(dir.file("nope.pem")));
    }
}

TEST_CASE("prepare_client rejects bad host names") {
    auto client = tls::Context::client({.verify_peer = false, .ca_file = {}});
    REQUIRE(client.ok());
    SslPtr ssl(SSL_new(client->get()));
    REQUIRE(ssl);
    CHECK_FALSE(tls::prepare_client(ssl.get(), "").ok());
    CHECK_FALSE(tls::prepare_client(ssl.get(), ".").ok());
    CHECK_FALSE(tls::prepare_client(ssl.get(), std::string("a\0b", 3)).ok());
    CHECK_FALSE(tls::prepare_client(nullptr, "mx.example.test").ok());
    CHECK(tls::prepare_client(ssl.get(), "192.0.2.1").ok());
    CHECK(tls::prepare_client(ssl.get(), "mx.example.test").ok());
}

TEST_CASE("last_error drains the queue") {
    ERR_clear_error();
    CHECK(tls::last_error() == "unknown TLS error");
    CHECK(SSL_CTX_use_certificate_file(nullptr, "/nonexistent", SSL_FILETYPE_PEM) != 1);
    std::string first = tls::last_error();
    CHECK(first != "unknown TLS error");
    CHECK(tls::last_error() == "unknown TLS error");
}
