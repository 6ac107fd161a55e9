// Helpers shared by the event module's source files (not a public header).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <string>

#include "libmail/log.hpp"

namespace facteur::event::detail {

inline std::string error_text(int error) { return std::strerror(error); }

inline timeval to_timeval(std::chrono::milliseconds duration) {
    if (duration.count() < 0) duration = std::chrono::milliseconds(0);
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(duration.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((duration.count() % 1000) * 1000);
    return tv;
}

inline void describe(const sockaddr_storage& address, std::string& host, uint16_t& port) {
    char text[INET6_ADDRSTRLEN] = {};
    if (address.ss_family == AF_INET) {
        auto* in = reinterpret_cast<const sockaddr_in*>(&address);
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
        port = ntohs(in->sin_port);
        host = text;
    } else if (address.ss_family == AF_INET6) {
        auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
        port = ntohs(in6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], text, sizeof text);
        } else {
            inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
        }
        host = text;
    } else {
        host = "unix";
        port = 0;
    }
}

// Runs a callback with every exception caught: none may cross libevent.
// Returns false when one was thrown.
template <typename Function>
bool guarded(const char* where, Function&& function) {
    try {
        function();
        return true;
    } catch (const std::exception& error) {
        log::error("{}: unexpected exception: {}", where, error.what());
    } catch (...) {
        log::error("{}: unexpected exception", where);
    }
    return false;
}

}  // namespace facteur::event::detail
