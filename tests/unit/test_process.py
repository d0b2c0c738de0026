"""The stub listing of ``blip_serving.triton.process``: which processes of a server's tree are stubs, and of what."""

from blip_serving.triton.process import stub_instance

STUB = "/tmp/blip-serving-backends-0/python/triton_python_backend_stub"
WHOLE = [STUB, "/repo/text_decoder/1/model.py", "triton_python_backend_shm_region_7", "1048576", "1048576", "4242",
         "/opt/tritonserver/backends/python", "336", "text_decoder_0_0", "DEFAULT", ""]  # fmt: skip


def test_a_whole_stub_command_line_names_its_instance() -> None:
    assert stub_instance(WHOLE) == "text_decoder_0_0"


def test_a_stub_seen_mid_start_or_exit_is_skipped_not_an_error() -> None:
    """What CI once read from /proc during the soak's fleet restart: the program alone."""
    assert stub_instance([STUB]) is None
    assert stub_instance([STUB, ""]) is None
    assert stub_instance([]) is None


def test_other_processes_are_not_stubs() -> None:
    assert stub_instance(["/opt/tritonserver/bin/tritonserver", "--model-repository", "/r", "--http-port", "1"]) is None
