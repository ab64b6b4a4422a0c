// Lets node's test runner import TypeScript (Node 20 cannot strip types): the hook the package ships.
import "../src/sdk/register.mjs";
