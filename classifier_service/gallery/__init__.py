"""The gallery: enrolled people, their store, the commands that change them and the clients that send those."""
