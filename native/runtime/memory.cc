// memfd / file mappings for guest memory. See memory.h.
#include "runtime/memory.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif

namespace runtime {

size_t Mapping::page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}

std::shared_ptr<Mapping> Mapping::allocate(size_t bytes, SysError* error) {
  const size_t page = page_size();
  const size_t size = (bytes + page - 1) / page * page;
  std::shared_ptr<Mapping> m(new Mapping());
  m->fd_ = static_cast<int>(::syscall(SYS_memfd_create, "understudy-guest", MFD_CLOEXEC));
  if (m->fd_ < 0) {
    *error = {errno, "memfd_create"};
    return nullptr;
  }
  if (size == 0) return m;
  if (::ftruncate(m->fd_, static_cast<off_t>(size)) != 0) {
    *error = {errno, "ftruncate"};
    return nullptr;
  }
  // SAFETY: fresh shared mapping of exactly `size` bytes of our own memfd; unmapped in ~Mapping.
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd_, 0);
  if (p == MAP_FAILED) {
    *error = {errno, "mmap"};
    return nullptr;
  }
  m->data_ = static_cast<uint8_t*>(p);
  m->size_ = size;
  return m;
}

std::shared_ptr<Mapping> Mapping::map_file(const std::string& path, bool writable, SysError* error) {
  std::shared_ptr<Mapping> m(new Mapping());
  m->file_backed_ = true;
  m->writable_ = writable;
  m->fd_ = ::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (m->fd_ < 0) {
    *error = {errno, "open"};
    return nullptr;
  }
  struct stat st;
  if (::fstat(m->fd_, &st) != 0) {
    *error = {errno, "fstat"};
    return nullptr;
  }
  if (!S_ISREG(st.st_mode)) {
    *error = {EINVAL, "fstat"};
    return nullptr;
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) return m;
  // SAFETY: maps exactly the file's current size. A read-only request uses a private
  // copy-on-write mapping so a write through the view cannot fault or reach the file.
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, writable ? MAP_SHARED : MAP_PRIVATE,
                   m->fd_, 0);
  if (p == MAP_FAILED) {
    *error = {errno, "mmap"};
    return nullptr;
  }
  m->data_ = static_cast<uint8_t*>(p);
  m->size_ = size;
  return m;
}

Mapping::~Mapping() {
  // SAFETY: data_/size_ are exactly what mmap returned; no user remains (last shared_ptr).
  if (data_ != nullptr) ::munmap(data_, size_);
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace runtime
