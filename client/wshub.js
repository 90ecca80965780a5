// wshub browser client: placeholder until the client library lands.
export {};
