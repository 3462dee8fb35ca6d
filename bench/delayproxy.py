"""A TCP proxy that delays every chunk by a fixed one-way delay in each direction: network
latency for the SSH path on a machine without `tc netem`. Order is kept; bandwidth is not limited.

    python -m bench.delayproxy ONE_WAY_MS LISTEN_PORT:TARGET_HOST:TARGET_PORT [...]

One process serves every LISTEN_PORT given (on 127.0.0.1), each in front of its own target.
"""

import asyncio
import sys


async def _pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def pump_in():
        while True:
            data = await reader.read(65536)
            await queue.put((loop.time() + delay, data))
            if not data:
                return

    async def pump_out():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                try:
                    writer.write_eof()
                except OSError:
                    pass
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(pump_in(), pump_out())
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(routes, delay):
    def handler(target_host, target_port):
        async def handle(client_reader, client_writer):
            try:
                server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
            except OSError:
                client_writer.close()
                return
            await asyncio.gather(_pipe(client_reader, server_writer, delay), _pipe(server_reader, client_writer, delay))

        return handle

    servers = [await asyncio.start_server(handler(host, port), "127.0.0.1", listen) for listen, host, port in routes]
    print("ready", flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


if __name__ == "__main__":
    one_way_ms = float(sys.argv[1])
    routes = []
    for spec in sys.argv[2:]:
        listen, host, port = spec.split(":")
        routes.append((int(listen), host, int(port)))
    try:
        asyncio.run(serve(routes, one_way_ms / 1000.0))
    except KeyboardInterrupt:
        pass
